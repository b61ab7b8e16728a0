"""facetrack models [--json]

The models that ship inside the package (facetrack/weights): landmark models (what --model takes), face
detectors (--detector) and the face validator, each with its card's key facts: landmark scheme, input size,
parameters, file size, what it is the default of, and its terms of use. Models trained on 300-W are for
research use only (the 300-W terms); the face detectors are MIT-licensed.
"""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list the packaged models with their cards' key facts and terms",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON object per model instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from facetrack.errors import FacetrackError
    from facetrack.packaged import WEIGHTS_DIR, packaged_models

    models = packaged_models()
    if not models:
        raise FacetrackError(f"no packaged models found in {WEIGHTS_DIR} (the installation looks broken)")
    if args.json:
        for m in models:
            print(json.dumps({**asdict(m), "default_for": m.default_for}))
        return 0
    for kind in ("landmarks", "face detector", "face validator"):
        group = [m for m in models if m.kind == kind]
        if not group:
            continue
        print({"landmarks": "Landmark models (--model)", "face detector": "Face detectors (--detector)",
               "face validator": "Face validator (--validator)"}[kind])
        for m in group:
            facts = []
            if m.num_points:
                facts.append(f"{m.num_points} points ({m.scheme})")
            if m.input_size:
                facts.append(f"{m.input_size} px crops")
            if m.video:
                facts.append("video (temporal)")
            if m.parameters:
                facts.append(f"{m.parameters / 1e6:.2f} M parameters")
            facts.append(f"{m.size_mb:.1f} MB")
            default = f"  [default of {m.default_for}]" if m.default_for else ""
            option = f"  (--detector {m.option})" if m.option else ""
            print(f"  {m.name}{option}{default}")
            print(f"      {', '.join(facts)}")
            print(f"      terms: {m.terms}")
            if m.description:
                print(f"      {m.description[:160]}{'...' if len(m.description) > 160 else ''}")
    return 0
