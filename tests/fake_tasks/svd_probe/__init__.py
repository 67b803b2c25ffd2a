"""A second task on the SVD-XT-1.1 checkpoint (as the talking-face tasks will be), to show networks are shared."""
