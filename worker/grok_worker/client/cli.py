"""`grok`: the command-line client of a worker's generation API.

  grok generate --target HOST:PORT "prompt" [--max-tokens N --temperature T ... --json]
  grok info --target HOST:PORT
  grok health --target HOST:PORT
  (each takes --tls --ca CA.pem [--cert C.pem --key K.pem] for TLS and mutual TLS, and --token T
   or $GROK_TOKEN for a worker that wants a bearer token)

`generate` streams text to stdout as it arrives (or prints one JSON object with --json). A gRPC
error prints the server's status code and message to stderr and exits 1; `health` exits 1 unless
the worker is SERVING.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import grpc
from google.protobuf import json_format

from grok_worker.client import security
from grok_worker.client.client import GrokClient

DEFAULT_TARGET = os.environ.get("GROK_TARGET", "127.0.0.1:50051")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grok", description="Client of the Grok generation API")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--target", default=DEFAULT_TARGET, help="HOST:PORT of a worker or Service ($GROK_TARGET)"
    )
    common.add_argument("--timeout", type=float, default=None, help="deadline in seconds")
    security.add_arguments(common)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", parents=[common], help="generate a completion, streaming it")
    gen.add_argument("prompt", help="prompt text ('-' reads stdin)")
    gen.add_argument("--token-ids", action="store_true", help="the prompt is comma-separated token ids")
    gen.add_argument("--max-tokens", type=int)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--add-bos", action="store_true")
    gen.add_argument("--json", action="store_true", help="print one JSON response instead of streaming text")
    sub.add_parser("info", parents=[common], help="print the model info and load state as JSON")
    health = sub.add_parser("health", parents=[common], help="print the grpc.health.v1 status")
    health.add_argument("--service", default="", help="service name ('' = the whole server)")
    return parser


def _prompt(args: argparse.Namespace) -> str | list[int]:
    text: str = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not args.token_ids:
        return text
    try:
        return [int(p) for p in text.replace(" ", "").split(",") if p]
    except ValueError:
        raise SystemExit(
            f"grok generate: --token-ids expects comma-separated integers, got {text!r}"
        ) from None


def _generate(client: GrokClient, args: argparse.Namespace) -> int:
    params: dict[str, object] = {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "seed": args.seed,
        "stop": args.stop,
        "add_bos": args.add_bos,
    }
    prompt = _prompt(args)
    if args.json:
        response = client.generate(prompt, return_logprobs=True, **params)
        print(json_format.MessageToJson(response, indent=None, preserving_proto_field_name=True))
        return 0
    last = None
    for message in client.generate_stream(prompt, **params):
        sys.stdout.write(message.text)
        sys.stdout.flush()
        last = message
    sys.stdout.write("\n")
    if last is not None:
        reason = last.finish_reason
        from grok.v1 import generation_pb2 as pb

        print(
            f"[{pb.FinishReason.Name(reason).removeprefix('FINISH_REASON_').lower()}, "
            f"{last.usage.completion_tokens} tokens]",
            file=sys.stderr,
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with GrokClient(args.target, args.timeout, security.from_arguments(args)) as client:
            if args.command == "generate":
                return _generate(client, args)
            if args.command == "info":
                info = json_format.MessageToDict(client.info(), preserving_proto_field_name=True)
                print(json.dumps(info, indent=2, sort_keys=True))
                return 0
            status = client.health(args.service)
            print(status)
            return 0 if status == "SERVING" else 1
    except grpc.RpcError as err:
        code = err.code()
        details = err.details()
        print(f"grok {args.command}: {code.name}: {details}", file=sys.stderr)
        return 1
    except ValueError as err:  # an unreadable --ca/--cert/--key, or --cert without --key
        print(f"grok {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
