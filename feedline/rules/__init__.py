"""The feed rules: pure functions shared by the streaming jobs and the batch rebuild."""
