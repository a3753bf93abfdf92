"""Default models: where their packaged weights and data live, and how `make models` builds them."""
