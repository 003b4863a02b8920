"""The Textual dashboard: reads rollout events, sends rollout commands."""
