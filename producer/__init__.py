"""Producers: turn URL lists and crawls into queued ``images`` rows and detect messages. Never imports torch."""
