"""The team's migration history: scaffold, order, history, migrate."""
