"""Every table, figure and verdict of the book, made from cached runs and the paper's numbers."""
