"""Helpers shared by the tune and train stages (the model contract, autograph, export)."""
