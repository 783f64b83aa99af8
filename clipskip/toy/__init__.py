"""The toy world the embedded model learns from: shape scenes, their captions, the training and a scorer."""
