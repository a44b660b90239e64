"""Data: pair-making tasks, paired clip datasets and synthetic pans with exact flow."""
