"""The weights zoo: where weight files come from, reading checkpoints, the release bundle, the Hub mirror."""
