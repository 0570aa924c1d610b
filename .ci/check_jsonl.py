"""CI: fer-edge wrote one JSON line per frame of the video, in frame order.

    python .ci/check_jsonl.py VIDEO EVENTS.jsonl WHERE

Run with the interpreter of the install under test (it needs OpenCV to count the video's frames).
"""
from __future__ import annotations

import json
import sys

import cv2


def main(video: str, events: str, where: str) -> int:
    cap = cv2.VideoCapture(video)
    frames = 0
    while cap.read()[0]:
        frames += 1
    with open(events, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    numbers = [doc["frame"] for doc in lines]
    with_face = sum(1 for doc in lines if doc["faces"])
    print(f"fer-edge on {where}: {len(lines)} JSON lines for {frames} video frames, {with_face} with a face")
    if frames == 0 or len(lines) != frames or numbers != sorted(set(numbers)):
        print(f"CI: expected one JSON line per frame ({frames}) in frame order, found {len(lines)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python .ci/check_jsonl.py VIDEO EVENTS.jsonl WHERE")
    sys.exit(main(*sys.argv[1:]))
