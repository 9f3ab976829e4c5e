"""Images and labels: the built-in MNIST, Dioptra folders, .npz files, adversarial sets, the array cache,
folders of real-size images built from local files (a Fruits360 copy, scikit-learn's sample photographs)."""
