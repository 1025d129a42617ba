"""`python -m trainer ...` runs the CLI."""
from trainer.cli import app

app()
