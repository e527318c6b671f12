"""The book: its chapters, their parameter profiles, execution and HTML build, and the command line."""
