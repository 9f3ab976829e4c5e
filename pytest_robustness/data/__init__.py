"""Images and labels: the built-in MNIST, Dioptra folders, .npz files, adversarial sets, the array cache."""
