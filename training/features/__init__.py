"""Feature builders that are large enough to live outside their training job."""
