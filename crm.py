#!/usr/bin/env python3
"""Double-click or `python crm.py [--host H] [--port P] [--no-browser]`: start the shop's CRM."""
import sys

from crm.start import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
