"""Real-time serving of the registry's champion, with a canary or a shadow of the challenger."""
