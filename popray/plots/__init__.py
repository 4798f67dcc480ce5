"""The figures `popray figures` draws (popray.figures), one function per figure."""
