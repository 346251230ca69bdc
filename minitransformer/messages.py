"""Messages for a person at a terminal: untrusted text made safe to print on one line.

    print(f"error: {sanitize(line_from_a_file)}", file=sys.stderr)

A sentence from a data file, a file name or a model's output may hold terminal escape
sequences ("\\x1b]0;owned\\x07" retitles the window, "\\x1b[2J" clears the screen) or line
breaks that would forge a second line of output. Every character that is not printable,
or that breaks lines, is shown as its Python escape instead ("\\x1b", "\\n", "\\u2028"),
so the user sees what the text holds and nothing acts on the terminal.
"""


def sanitize(text):
    """``text`` with every non-printable character written as its escape (one line, inert)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
