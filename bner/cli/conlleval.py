"""``python -m bner.evaluate FILE`` (or ``bner-evaluate``): conlleval's scores of any system's output.

The file is in conlleval's input format: one token a line, gold and predicted tag in the last
two columns, blank lines between sentences.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from bner.arguments import Parser
from bner.data import corpus
from bner.inference import evaluate


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(
        prog="python -m bner.evaluate",
        description="Entity-level precision/recall/F1 exactly as conlleval computes them.",
    )
    parser.add_argument("file", help="one token a line: word ... gold-tag predicted-tag; blank lines between sentences")
    # A switch: an optional true|false value would take the next argument (the file) as its value.
    parser.add_argument("--json", action="store_true", help="print the scores as JSON instead of conlleval's report")
    args = parser.parse_args(argv)
    try:
        gold, predicted = evaluate.read_predictions(args.file)
    except (corpus.CorpusError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.file}: {e.strerror or e}", file=sys.stderr)
        return 2
    scores = evaluate.score(gold, predicted)
    print(json.dumps(scores.as_dict(), indent=2) if args.json else evaluate.format_report(scores), end="" if not args.json else "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
