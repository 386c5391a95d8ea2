"""Users, sign-in, sessions, API tokens and access control."""
