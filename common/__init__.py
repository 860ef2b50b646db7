"""Building blocks shared by both bundles: blocks, attention, losses, transforms, data, phantoms, engines."""
