"""Engines: the trainer and the batched, pipelined translator."""
