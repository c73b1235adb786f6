"""The web side of carepath: the web hooks app and the pages staff use."""
