"""A task without models, for the job machinery's tests."""
