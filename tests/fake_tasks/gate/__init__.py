"""A task that holds its device slot until the test lets it go, for the multi-device scheduler's tests."""
