"""Jobs: each joins genome, engine, models and outputs for one command (imports go down only)."""
