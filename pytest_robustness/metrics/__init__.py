"""What a cell's numbers are: metric arithmetic, their names, and the statistics of a verdict."""
