"""Check a training, questions or answers file and list every problem.

Prints one line per problem (file, line or index, record id, field, what is wrong), then a summary line.
Exit code 1 when there is any problem, 0 when the file is fine.

The kind of file is detected from its first record unless --kind is given. Image paths in records are
checked: relative paths resolve against --image-folder when given, else against the record file's folder.

examples:
  medvlm validate data/train.json --image-folder data/images
  medvlm validate answers.jsonl --kind answers --json
"""

from __future__ import annotations

import argparse
import json

from medvlm.records import KINDS, validate_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="record file: a JSON list or JSON Lines")
    parser.add_argument("--image-folder", default=None,
                        help="folder that relative image paths resolve against (default: the record file's folder)")
    parser.add_argument("--kind", choices=KINDS, default=None,
                        help="what the file holds (default: detected from the first record)")
    parser.add_argument("--no-file-check", action="store_true",
                        help="do not check that image and volume files exist")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object {file, kind, records, problems: [...]} instead of text lines")


def run(args: argparse.Namespace) -> int:
    problems = validate_file(args.file, image_folder=args.image_folder, kind=args.kind,
                             check_files=not args.no_file_check)
    if args.json:
        print(json.dumps({"file": args.file, "kind": problems.kind, "records": problems.num_records,
                          "problems": [p.to_dict() for p in problems]}, indent=2, ensure_ascii=False))
    else:
        for problem in problems:
            print(problem)
        kind = problems.kind or "unknown kind"
        print(f"{args.file}: {problems.num_records} {kind} record(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0
