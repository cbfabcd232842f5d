"""``make bench``: the whole catalog in one comparison, with its floor and peer rows."""
