"""The upgrade procedure for a fleet: steps, batches, policies, journal, events. No Textual, no CLI text."""
