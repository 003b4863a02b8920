"""Simulated SEG appliances on real SSH and a local update server; follows DIALOGUES.md on its own."""
