"""clipskip web app: `python app.py` serves the built-in model on http://127.0.0.1:7860; `--help` lists options."""

from clipskip.ui import main

if __name__ == "__main__":
    raise SystemExit(main())
