"""fsdtag's shared package: data, folds, features, models' building blocks, training and metrics."""
