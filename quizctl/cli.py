"""quizctl: the host's command line for QuizMesh.

    quizctl signup --email ada@example.org --name Ada   # or: quizctl login --email ...
    quizctl token --role host --subject alice          # development: a signed dev token
    export QUIZMESH_TOKEN=$(quizctl token --role host --subject alice)
    QUIZ=$(quizctl create examples/quiz.yaml)
    quizctl start "$QUIZ"; quizctl advance "$QUIZ"; quizctl close "$QUIZ"
    quizctl leaderboard "$QUIZ" --all
    quizctl enrol "$QUIZ" --count 100000                 # load tests: players at once

Exit status: 0 on success, 2 when the request itself is wrong (bad arguments,
bad quiz file, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, ...), 1 when the
call failed for another reason (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import grpc
from quizmesh.leaderboard.v1 import leaderboard_pb2
from quizmesh.quiz.v1 import account_pb2, library_pb2, quiz_pb2

from quizctl import output, session
from quizctl.client import (
    Connection,
    IdentityError,
    QuizMeshClient,
    issue_token,
    resolve_target,
    resolve_token,
    settings_of,
)
from quizctl.enrol import enrol
from quizctl.quizfile import QuizFileError, dump_quiz_file, load_quiz_file
from quizctl.recover import recover
from quizctl.session import SessionFileError
from services.identity.tokens import Role
from services.mesh.errors import ServiceError
from services.quiz.joining import ENROL_BATCH
from services.quiz.store import DuplicateKey

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

# The caller can fix these by changing the request; everything else is the
# system's trouble (or a retry's chance).
CLIENT_ERRORS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)

# --all asks for big pages unless --page-size says otherwise (the contract allows 1000).
ALL_PAGE_SIZE = 1000

Handler = Callable[[argparse.Namespace, Mapping[str, str]], Awaitable[int]]


class UsageError(Exception):
    """The command cannot run as given; the message says what to change."""


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: parses ``argv`` (default ``sys.argv[1:]``), returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(execute(args, os.environ))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `quizctl list | head`: the reader left; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


async def run(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Like ``main`` but inside a running event loop (tests, embedding)."""
    args = build_parser().parse_args(argv)
    return await execute(args, os.environ if environ is None else environ)


async def execute(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    handler: Handler = args.handler
    try:
        return await handler(args, environ)
    except QuizFileError as e:
        for problem in e.problems:
            _err(f"error: {problem}")
        return EXIT_USAGE
    except (UsageError, IdentityError, SessionFileError) as e:
        _err(f"error: {e}")
        return EXIT_USAGE
    except grpc.aio.AioRpcError as e:
        return _rpc_failed(e, args, environ)


def _rpc_failed(error: Any, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    code: grpc.StatusCode = error.code()
    details = error.details() or "(no details)"
    _err(f"error: {code.name}: {details}")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        target = resolve_target(args.target, environ)
        _err(
            f"hint: is the gateway running at {target}? Choose it with --target or QUIZMESH_TARGET."
        )
    elif code is grpc.StatusCode.UNAUTHENTICATED:
        _err(
            "hint: sign in with quizctl login --email EMAIL, or pass --token / QUIZMESH_TOKEN, "
            "or --as NAME with the dev key."
        )
    return EXIT_USAGE if code in CLIENT_ERRORS else EXIT_FAILURE


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# --- commands -------------------------------------------------------------------------


async def cmd_token(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    role = Role(args.role)
    quiz_id: str | None = args.quiz
    if role is Role.PLAYER and not quiz_id:
        raise UsageError("a player token belongs to one quiz: add --quiz QUIZ")
    if role is Role.HOST and quiz_id:
        raise UsageError("--quiz only applies to --role player")
    token, created_jwks = issue_token(role, args.subject, args.ttl, environ, quiz_id)
    if created_jwks is not None:
        _err(f"created development keys; services and Envoy verify with {created_jwks}")
    print(token)
    return EXIT_OK


async def cmd_recover(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        rebuilt = await recover(args.quiz, settings_of(environ))
    except ServiceError as e:
        _err(f"error: {e.code.name}: {e.message}")
        return EXIT_USAGE if e.code in CLIENT_ERRORS else EXIT_FAILURE
    if rebuilt is not None:
        print(
            f"quiz {rebuilt.quiz_id}: rebuilt {rebuilt.players} players, {rebuilt.answers} answers"
        )
    return EXIT_OK


async def cmd_enrol(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    count: int = args.count
    first: int = args.first
    nicknames = [f"{args.prefix}{i}" for i in range(first, first + count)]
    started = time.monotonic()
    shown = started

    def progress(done: int) -> None:
        nonlocal shown
        if sys.stderr.isatty() and time.monotonic() - shown >= 1.0:
            shown = time.monotonic()
            _err(f"enrolled {done:,} of {count:,}")

    try:
        player_ids = await enrol(args.quiz, nicknames, settings_of(environ), args.batch, progress)
    except DuplicateKey:
        _err(
            f"error: a nickname {args.prefix}{first}..{args.prefix}{first + count - 1} is "
            "already taken in this quiz; choose another --prefix or --first"
        )
        return EXIT_USAGE
    except ServiceError as e:
        _err(f"error: {e.code.name}: {e.message}")
        return EXIT_USAGE if e.code in CLIENT_ERRORS else EXIT_FAILURE
    seconds = time.monotonic() - started
    if args.ids is not None:
        lines = "".join(f"{pid}\n" for pid in player_ids)
        await asyncio.to_thread(Path(args.ids).write_text, lines, encoding="utf-8")
    print(
        f"quiz {args.quiz.strip().upper()}: enrolled {len(player_ids)} players in {seconds:.1f} s "
        f"({len(player_ids) / max(seconds, 1e-9):,.0f}/s)"
    )
    return EXIT_OK


async def cmd_create(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    # The file is checked before anything else, so a typo never reaches the server.
    request = load_quiz_file(args.file)
    async with await _client(args, environ, host_only=True) as client:
        response = await client.create_quiz(request)
    print(output.to_json(response) if args.json else response.quiz.quiz_id)
    return EXIT_OK


async def cmd_get(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async with await _client(args, environ) as client:
        response = await client.get_quiz(args.quiz)
    print(
        output.to_json(response)
        if args.json
        else output.quiz_summary(response.quiz, all_questions=True)
    )
    return EXIT_OK


async def cmd_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async with await _client(args, environ) as client:
        response = await client.list_quizzes(args.page_size or 0, args.page_token or "")
    if args.json:
        print(output.to_json(response))
        return EXIT_OK
    print(output.quiz_table(response.quizzes))
    if response.next_page_token:
        print(f"more: quizctl list --page-token {response.next_page_token}")
    return EXIT_OK


LifecycleResponse: TypeAlias = (
    quiz_pb2.StartQuizResponse
    | quiz_pb2.AdvanceQuestionResponse
    | quiz_pb2.CloseQuizResponse
    | quiz_pb2.SetLobbyResponse
)


async def _lifecycle(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    step: Callable[[QuizMeshClient, str], Awaitable[LifecycleResponse]],
) -> int:
    """A host's start, advance, close, lock or unlock: the quiz after it, as a
    summary or JSON."""
    async with await _client(args, environ, host_only=True) as client:
        response = await step(client, args.quiz)
    print(output.to_json(response) if args.json else output.quiz_summary(response.quiz))
    return EXIT_OK


async def cmd_start(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return await _lifecycle(args, environ, QuizMeshClient.start_quiz)


async def cmd_advance(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return await _lifecycle(args, environ, QuizMeshClient.advance_question)


async def cmd_close(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return await _lifecycle(args, environ, QuizMeshClient.close_quiz)


async def cmd_lock(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return await _lifecycle(args, environ, QuizMeshClient.lock_lobby)


async def cmd_unlock(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return await _lifecycle(args, environ, QuizMeshClient.unlock_lobby)


async def cmd_report(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    async with await _client(args, environ, host_only=True) as client:
        if args.csv:
            _write(args.output, (await client.report_csv(args.quiz)).decode())
            return EXIT_OK
        report = await client.report(args.quiz)
    _write(args.output, (output.to_json(report) if args.json else output.report(report)) + "\n")
    return EXIT_OK


async def cmd_library(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    action: str = args.action
    # Files are checked before anything else, so a typo never reaches the server.
    content = load_quiz_file(args.file) if action in ("import", "update") else None
    async with await _client(args, environ, host_only=True) as client:
        if action == "list":
            return await _library_list(client, bool(args.json))
        if content is not None and action == "import":
            made = await client.library(
                "CreateLibraryQuiz",
                library_pb2.CreateLibraryQuizRequest(
                    title=content.title,
                    questions=content.questions,
                    instant_feedback=content.instant_feedback,
                    allow_late_join=content.allow_late_join,
                ),
            )
            print(output.to_json(made) if args.json else made.library_quiz.library_quiz_id)
            return EXIT_OK
        ref: str = args.library_quiz
        match action:
            case "show" | "export":
                got = await client.library(
                    "GetLibraryQuiz", library_pb2.GetLibraryQuizRequest(library_quiz_id=ref)
                )
                quiz = got.library_quiz
                if action == "export":
                    text = dump_quiz_file(
                        quiz.title, quiz.questions, quiz.instant_feedback, quiz.allow_late_join
                    )
                    _write(args.output, text)
                else:
                    print(output.to_json(got) if args.json else output.library_quiz(quiz))
            case "update":
                assert content is not None
                request = library_pb2.UpdateLibraryQuizRequest(
                    library_quiz_id=ref,
                    title=content.title,
                    questions=content.questions,
                    instant_feedback=content.instant_feedback,
                    allow_late_join=content.allow_late_join,
                )
                if args.expected_version is not None:
                    request.expected_version = args.expected_version
                saved = await client.library("UpdateLibraryQuiz", request)
                print(
                    output.to_json(saved)
                    if args.json
                    else f"{ref}: saved as version {saved.library_quiz.version}"
                )
            case "duplicate":
                copied = await client.library(
                    "DuplicateLibraryQuiz",
                    library_pb2.DuplicateLibraryQuizRequest(
                        library_quiz_id=ref, title=args.title or ""
                    ),
                )
                print(output.to_json(copied) if args.json else copied.library_quiz.library_quiz_id)
            case "delete":
                await client.library(
                    "DeleteLibraryQuiz", library_pb2.DeleteLibraryQuizRequest(library_quiz_id=ref)
                )
                print(f"{ref}: deleted (games played from it stay)")
            case "play":
                game = await client.library(
                    "PlayLibraryQuiz", library_pb2.PlayLibraryQuizRequest(library_quiz_id=ref)
                )
                print(output.to_json(game) if args.json else game.quiz.quiz_id)
    return EXIT_OK


async def _library_list(client: QuizMeshClient, as_json: bool) -> int:
    page_token = ""
    while True:
        page = await client.library(
            "ListLibraryQuizzes",
            library_pb2.ListLibraryQuizzesRequest(page_size=100, page_token=page_token),
        )
        for quiz in page.library_quizzes:
            print(output.to_json(quiz) if as_json else output.library_line(quiz))
        page_token = page.next_page_token
        if not page_token:
            return EXIT_OK


def _write(path: str | None, text: str) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        return
    Path(path).write_text(text)
    _err(f"wrote {path}")


async def cmd_leaderboard(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    quiz_id: str = args.quiz
    follow: bool = args.all
    page_size: int = args.page_size or (ALL_PAGE_SIZE if follow else 0)
    token: str = args.page_token or ""
    async with await _client(args, environ) as client:
        page = await client.get_leaderboard(quiz_id, page_size, token)
        if follow:
            board = leaderboard_pb2.GetLeaderboardResponse()
            board.entries.extend(page.entries)
            seen = {token}
            while page.next_page_token:
                if page.next_page_token in seen:
                    raise UsageError(f"the server repeated page token {page.next_page_token!r}")
                seen.add(page.next_page_token)
                page = await client.get_leaderboard(quiz_id, page_size, page.next_page_token)
                board.entries.extend(page.entries)
            # Totals and finality come from the last page: the freshest view.
            board.total_players = page.total_players
            board.is_final = page.is_final
            page = board
    if args.json:
        print(output.to_json(page))
        return EXIT_OK
    print(output.leaderboard_table(page))
    if page.next_page_token:
        print(f"more: quizctl leaderboard {quiz_id} --page-token {page.next_page_token} (or --all)")
    return EXIT_OK


async def _client(
    args: argparse.Namespace, environ: Mapping[str, str], *, host_only: bool = False
) -> QuizMeshClient:
    target = resolve_target(args.target, environ)
    token = resolve_token(args.token, args.as_name, environ)
    if token is None:
        token = await _session_token(args, environ, target)
    if host_only and token is None:
        raise UsageError(
            "this command needs a host: sign in with quizctl login --email EMAIL, or pass "
            "--token TOKEN or --as NAME (or set QUIZMESH_TOKEN / QUIZMESH_HOST)"
        )
    return QuizMeshClient(_connection(args, target, token))


def _connection(args: argparse.Namespace, target: str, token: str | None) -> Connection:
    timeout: float = args.timeout
    return Connection(target=target, token=token, timeout_seconds=timeout, tls=bool(args.tls))


async def _session_token(
    args: argparse.Namespace, environ: Mapping[str, str], target: str
) -> str | None:
    """The stored session's access token for this gateway, refreshed when it is about
    to expire; None without a session for it."""
    stored = session.load(environ)
    if stored is None or stored.target != target:
        return None
    if stored.fresh():
        return stored.access_token
    async with QuizMeshClient(_connection(args, target, None)) as client:
        try:
            renewed = stored.renewed(await client.refresh_session(stored.refresh_token))
        except grpc.aio.AioRpcError as e:
            if e.code() is not grpc.StatusCode.UNAUTHENTICATED:
                raise
            session.forget(environ)
            raise IdentityError(
                f"the session of {stored.email} has ended ({e.details()}): "
                f"quizctl login --email {stored.email}"
            ) from None
    session.save(environ, renewed)
    return renewed.access_token


def _password(args: argparse.Namespace, prompt: str, *, twice: bool = False) -> str:
    if args.password_stdin:
        return sys.stdin.readline().removesuffix("\n")
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = getpass.getpass(prompt)
    if twice and getpass.getpass("Again: ") != password:
        raise UsageError("the two passwords differ")
    return password


async def cmd_signup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    target = resolve_target(args.target, environ)
    request = account_pb2.SignUpRequest(
        email=args.email,
        password=_password(args, "New password (10 or more characters): ", twice=True),
        display_name=args.name,
        invite_code=args.invite_code or "",
    )
    async with QuizMeshClient(_connection(args, target, None)) as client:
        made = await client.sign_up(request)
    stored = session.of_response(target, made.host, made.session)
    path = session.save(environ, stored)
    print(f"signed up and signed in as {stored.display_name} <{stored.email}> at {target}")
    _err(f"session kept in {path}")
    return EXIT_OK


async def cmd_login(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    target = resolve_target(args.target, environ)
    password = _password(args, f"Password for {args.email}: ")
    async with QuizMeshClient(_connection(args, target, None)) as client:
        signed_in = await client.sign_in(args.email, password)
    stored = session.of_response(target, signed_in.host, signed_in.session)
    path = session.save(environ, stored)
    print(f"signed in as {stored.display_name} <{stored.email}> at {target}")
    _err(f"session kept in {path}")
    return EXIT_OK


async def cmd_logout(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    stored = session.load(environ)
    if stored is None:
        print("not signed in")
        return EXIT_OK
    connection = _connection(args, stored.target, None)
    async with QuizMeshClient(connection) as client:
        try:
            await client.sign_out(stored.refresh_token)
        except grpc.aio.AioRpcError as e:
            # Already ended (expired, or signed out elsewhere): nothing left to end.
            if e.code() is not grpc.StatusCode.UNAUTHENTICATED:
                raise
    session.forget(environ)
    print(f"signed out {stored.email} at {stored.target}")
    return EXIT_OK


# --- arguments ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quizctl",
        description="Create and run QuizMesh quizzes from the command line.",
        epilog="Connection options may also follow the command: quizctl get QUIZ --json.",
    )
    _add_connection_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token",
        help="print a signed token (creates the dev keys on first use)",
        description="Sign a token with the development key; prints only the token.",
    )
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.HOST.value)
    token.add_argument("--subject", required=True, help="host name, or the player's id")
    token.add_argument("--quiz", help="the quiz a player token belongs to (players only)")
    token.add_argument(
        "--ttl", type=_positive_int, default=3600, metavar="SECONDS", help="lifetime (3600)"
    )
    token.set_defaults(handler=cmd_token)

    signup = _account_command(
        commands, "signup", "create a host account and sign in to it", cmd_signup
    )
    signup.add_argument("--email", required=True, help="the account's sign-in name")
    signup.add_argument("--name", required=True, help="the name players and reports show")
    signup.add_argument("--invite-code", help="needed where sign-up is invite-only")
    login = _account_command(
        commands, "login", "sign in; later host commands use the session", cmd_login
    )
    login.add_argument("--email", required=True)
    _account_command(commands, "logout", "end the stored session", cmd_logout)

    create = _rpc_command(commands, "create", "create a quiz from a YAML or JSON file", cmd_create)
    create.add_argument(
        "file", metavar="FILE", help="quiz file (.yaml, .yml or .json; - for stdin)"
    )

    get = _rpc_command(commands, "get", "show a quiz", cmd_get)
    get.add_argument("quiz", metavar="QUIZ", help="quiz code")

    listing = _rpc_command(commands, "list", "list quizzes, newest first", cmd_list)
    listing.add_argument("--page-size", type=_positive_int, metavar="N")
    listing.add_argument("--page-token", metavar="TOKEN", help="from a previous page")

    for name, summary, handler in (
        ("start", "start a quiz: opens its first question", cmd_start),
        ("advance", "close the current question and open the next", cmd_advance),
        ("close", "close a quiz; its leaderboard becomes final", cmd_close),
        ("lock", "lock a quiz's lobby: nobody can join until unlock", cmd_lock),
        ("unlock", "open a quiz's lobby again", cmd_unlock),
    ):
        command = _rpc_command(commands, name, summary, handler)
        command.add_argument("quiz", metavar="QUIZ", help="quiz code")

    recovery = commands.add_parser(
        "recover",
        help="rebuild a quiz's live Redis state from SQL and JetStream (operators)",
        description="Rebuild a quiz's live Redis state from SQL plus the JetStream record of "
        "accepted answers. Connects to Redis, NATS and the database directly, as configured "
        "by the QUIZMESH_* variables; answers wait (UNAVAILABLE, retried) meanwhile.",
    )
    recovery.add_argument("quiz", metavar="QUIZ", help="quiz code")
    recovery.set_defaults(handler=cmd_recover)

    enrolment = commands.add_parser(
        "enrol",
        help="enrol many players in an open quiz at once (load tests, operators)",
        description="Enrol COUNT players named PREFIX<FIRST>..PREFIX<FIRST+COUNT-1> in an open "
        "quiz: exactly what that many JoinQuiz calls write, in batches straight to the database "
        "and Redis, as configured by the QUIZMESH_* variables. Players get no tokens; sign one "
        "with `quizctl token --role player --subject ID --quiz QUIZ`.",
    )
    enrolment.add_argument("quiz", metavar="QUIZ", help="quiz code")
    enrolment.add_argument(
        "--count", type=_positive_int, required=True, metavar="N", help="how many players"
    )
    enrolment.add_argument("--prefix", default="player", help="nickname prefix (player)")
    enrolment.add_argument(
        "--first", type=int, default=0, metavar="N", help="number of the first nickname (0)"
    )
    enrolment.add_argument(
        "--batch",
        type=_positive_int,
        default=ENROL_BATCH,
        metavar="N",
        help=f"players per transaction ({ENROL_BATCH})",
    )
    enrolment.add_argument("--ids", metavar="FILE", help="write the new player ids here")
    enrolment.set_defaults(handler=cmd_enrol)

    library = commands.add_parser(
        "library",
        help="your quiz library: quizzes kept and played again",
        description="Your quiz library: quizzes kept apart from their games, played any "
        "number of times. Quiz files import and export in the format `quizctl create` reads.",
    )
    actions = library.add_subparsers(dest="action", required=True, metavar="ACTION")
    _rpc_command(actions, "list", "list your library, most recently changed first", cmd_library)
    for name, summary in (
        ("show", "show a library quiz with its questions"),
        ("export", "write a library quiz as a quiz file (YAML)"),
        ("update", "replace a library quiz's content with a quiz file"),
        ("duplicate", "copy a library quiz"),
        ("delete", "remove a library quiz (its games stay)"),
        ("play", "a new game of a library quiz: prints its code"),
    ):
        action = _rpc_command(actions, name, summary, cmd_library)
        action.add_argument("library_quiz", metavar="ID", help="library quiz id")
        if name == "export":
            action.add_argument("-o", "--output", metavar="FILE", help="file to write (stdout)")
        if name == "update":
            action.add_argument("file", metavar="FILE", help="quiz file (- for stdin)")
            action.add_argument(
                "--expected-version",
                type=_positive_int,
                metavar="N",
                help="refuse if the quiz is no longer at version N (saved meanwhile)",
            )
        if name == "duplicate":
            action.add_argument("--title", help='the copy\'s title ("Copy of ..." by default)')
    imported = _rpc_command(actions, "import", "add a quiz file to your library", cmd_library)
    imported.add_argument(
        "file", metavar="FILE", help="quiz file (.yaml, .yml or .json; - for stdin)"
    )

    report = _rpc_command(
        commands, "report", "a game's results: players and questions (host only)", cmd_report
    )
    report.add_argument("quiz", metavar="QUIZ", help="quiz code")
    report.add_argument("--csv", action="store_true", help="CSV, one row per player and question")
    report.add_argument("-o", "--output", metavar="FILE", help="file to write (stdout)")

    board = _rpc_command(commands, "leaderboard", "show a quiz's ranking", cmd_leaderboard)
    board.add_argument("quiz", metavar="QUIZ", help="quiz code")
    board.add_argument("--page-size", type=_positive_int, metavar="N")
    board.add_argument("--page-token", metavar="TOKEN", help="from a previous page")
    board.add_argument("--all", action="store_true", help="follow every page to the end")
    return parser


def _rpc_command(
    commands: Any, name: str, summary: str, handler: Handler
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary)
    _add_connection_options(command, suppress=True)
    command.add_argument(
        "--json", action="store_true", help="print the response as JSON (proto field names)"
    )
    command.set_defaults(handler=handler)
    return command


def _account_command(
    commands: Any, name: str, summary: str, handler: Handler
) -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=summary)
    _add_connection_options(command, suppress=True)
    if name != "logout":
        command.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input (scripts)",
        )
    command.set_defaults(handler=handler)
    return command


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On a subcommand the defaults are suppressed, so that an option given before
    # the command is not reset by the subcommand's own default.
    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=default(None),
        metavar="HOST:PORT",
        help="gateway address (env QUIZMESH_TARGET, default localhost:8080)",
    )
    group.add_argument(
        "--tls", action="store_true", default=default(False), help="connect with TLS"
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each call (10)",
    )
    who = group.add_mutually_exclusive_group()
    who.add_argument(
        "--token", default=default(None), help="host bearer token (env QUIZMESH_TOKEN)"
    )
    who.add_argument(
        "--as",
        dest="as_name",
        default=default(None),
        metavar="NAME",
        help="sign a host token for NAME with the dev key (env QUIZMESH_HOST)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value
