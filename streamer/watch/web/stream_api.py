"""Change the streams of a running run over HTTP: the bodies, the routes, the OpenAPI document.

::

    GET    /api/streams          every stream and its settings (the read rules of the viewer)
    POST   /api/streams          add one: {"name": "door", "input": "rtsp://...", ...options}
    GET    /api/streams/{name}   one stream
    PATCH  /api/streams/{name}   change a running one: {"analyze-fps": 1, "labels": "dog, cat",
                                 "alerts": ["a person"], "captions": "off"}
    DELETE /api/streams/{name}   remove one: its outputs are finished; answers its summary
    POST   /api/reload           re-read the run's --config file (`reload_api`)
    GET    /api/openapi.json     this API as an OpenAPI 3.1 document

A body's keys are the options' own keys, as a configuration file writes them (`analyze-fps`,
`jsonl`; `_` works as `-`), and each value is typed by its option's declaration
(`Option.read`, which the TOML reader uses too): the same value is refused in a file and in a
body with the same words (the values that are more than one option's text, a stream's
labels, alerts and captions switch, are read in `stream_body`, their parts by their options
too). The document's schemas are made from the same table (`FIELDS`), so
what the API accepts and what it documents cannot drift apart.

Every change needs the viewer's token (`--serve-token`), also from this machine: a viewer
without one answers 403 to changes. Errors are JSON `{"error": message}`: 400 a bad body (the
message names the field and what is allowed), 401/403 the token, 404 an unknown stream, 409 a
name in use, 501 a run that cannot change its streams.

The run does the work: it hands the viewer a control object as `run.control`
(`streamer.control.RunControl`, a layer above; `streamer.cluster.control.ClusterControl` on a
cluster), which these routes call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aiohttp import web

from streamer.analysis.options import AnalysisConfig
from streamer.core.options import Declared, declared
from streamer.core.spelling import closest
from streamer.errors import (
    ConfigError,
    NoConfigFileError,
    SourceError,
    StreamerError,
    StreamExistsError,
    UnknownStreamError,
)
from streamer.outputs.options import OutputConfig
from streamer.watch.web import reload_api
from streamer.watch.web._http import json_response
from streamer.watch.web.stream_body import (
    AlertsValue,
    CaptionsValue,
    LabelsValue,
    StreamRequest,
    Value,
    json_kind,
    stream_key,
)

__all__ = ["FIELDS", "BodyField", "StreamControl", "StreamRequest", "openapi", "parse_body"]

Kind = Literal["add", "change"]
BODY_LIMIT = 64 * 1024  # bytes of a request body, at most

_OPTIONS = {
    **{row.option.key: row for row in declared(AnalysisConfig, "analysis.")},
    **{row.option.key: row for row in declared(OutputConfig, "outputs.")},
}


@dataclass(frozen=True, slots=True)
class BodyField:
    """One key a body may hold.

    Attributes:
        key: the key (an option's file key, or `name` / `input`).
        kinds: the requests that take it: adding a stream, changing one.
        row: the option it sets (typed and documented by its declaration); None for the
            stream's own keys.
        required: a request of these kinds needs it.
        help: what it is, where it is no option.
        value: how a value that is more than one option's text is read and documented
            (`stream_body`); None for one option's value or a stream's own key.
    """

    key: str
    kinds: tuple[Kind, ...]
    row: Declared | None = None
    required: tuple[Kind, ...] = ()
    help: str = ""
    value: Value | None = None

    @property
    def setting(self) -> bool:
        """It is a setting of the stream (not its name or input)."""
        return self.row is not None or self.value is not None

    @property
    def path(self) -> str:
        """Where its value goes (`analysis.analyze_fps`), or the key for the stream's own."""
        return self.row.path if self.row is not None else self.key

    def read(self, value: Any) -> Any:
        """The value, typed as its option types a file's; ConfigError says why not."""
        if self.value is not None:
            return self.value.read(value)
        if self.row is None:
            return stream_key(self.key, value)
        opt = self.row.option
        try:
            typed = opt.read(value)
        except ValueError as exc:
            raise ConfigError(f"{self.key}: {exc} (like {opt.flag})") from None
        return opt.to_field(typed) if opt.to_field is not None else typed

    def schema(self) -> dict[str, Any]:
        """Its JSON schema, from the declaration: text or a number, as `Option.read` takes."""
        if self.value is not None:
            return self.value.schema()
        if self.row is None:
            return {"type": "string", "description": self.help}
        opt = self.row.option
        expected = opt.check.expected if opt.check is not None else "a string"
        text: dict[str, Any] = {
            "type": ["string", "number"] if opt.check is not None else "string",
            "description": f"{opt.help}: {expected} (like {opt.flag})",
        }
        if isinstance(self.row.default, str | int | float) and self.row.default is not None:
            text["default"] = self.row.default
        return text


def _option(key: str, kinds: tuple[Kind, ...]) -> BodyField:
    return BodyField(key, kinds, _OPTIONS[key])


FIELDS: tuple[BodyField, ...] = (
    BodyField("name", ("add",), required=("add",),
              help="the stream's name: letters, digits, '_', '.' and '-' (it fills {stream} "
                   "in output paths)"),
    BodyField("input", ("add",), required=("add",),
              help="the stream's source: an rtsp://, rtsps://, http(s):// URL, a camera "
                   "index or device, or a file path"),
    _option("analyze-fps", ("add", "change")),
    BodyField("labels", ("add", "change"), _OPTIONS["labels"],
              value=LabelsValue(_OPTIONS["labels"])),
    BodyField("alerts", ("add", "change"), value=AlertsValue()),
    BodyField("captions", ("add", "change"), value=CaptionsValue()),
    *(_option(key, ("add",)) for key in ("output", "srt", "vtt", "jsonl")),
)  # fmt: skip


def parse_body(body: Any, kind: Kind) -> StreamRequest:
    """Check a JSON body of an `add` or `change` request, key by key.

    Raises:
        ConfigError: a key that is unknown (the close one is named) or not allowed here, a
            value its option refuses, a required key missing; the message names the key.
    """
    if not isinstance(body, dict):
        raise ConfigError(f"the body must be a JSON object of settings, got {json_kind(body)}")
    allowed = {f.key: f for f in FIELDS if kind in f.kinds}
    known = {f.key: f for f in FIELDS}
    values: dict[str, Any] = {}
    for raw, value in body.items():
        key = str(raw).replace("_", "-")
        if key not in allowed:
            raise ConfigError(_unknown(key, kind, allowed, known))
        values[key] = allowed[key].read(value)
    for f in allowed.values():
        if kind in f.required and f.key not in values:
            raise ConfigError(f"{f.key}: missing; give {f.help}")
    settings = {allowed[k].path: v for k, v in values.items() if allowed[k].setting}
    return StreamRequest(values.get("name"), values.get("input"), settings)


def _unknown(key: str, kind: Kind, allowed: dict, known: dict) -> str:
    if key in known:
        return (f"{key}: cannot be set when {'adding' if kind == 'add' else 'changing'} a "
                f"stream; allowed here: {', '.join(allowed)}")  # fmt: skip
    close = closest(key, list(allowed))
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"{key}: unknown key{hint}; allowed here: {', '.join(allowed)}"


class StreamControl(Protocol):
    """What a run that can change its streams hands the viewer (`run.control`)."""

    def streams(self) -> list[dict[str, Any]]: ...

    async def add(self, request: StreamRequest) -> dict[str, Any]: ...

    async def remove(self, name: str) -> dict[str, Any]: ...

    async def change(self, name: str, request: StreamRequest) -> dict[str, Any]: ...


# --- routes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the API, as registered and as documented."""

    method: str
    path: str
    handler: str
    summary: str
    body: Kind | None = None
    changes: bool = False
    ok: int = 200


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/streams", "streams", "Every stream of the run and its settings"),
    Route("POST", "/api/streams", "add", "Add a stream; it starts at once", "add", True, 201),
    Route("GET", "/api/streams/{name}", "stream", "One stream and its settings"),
    Route("PATCH", "/api/streams/{name}", "change", "Change a running stream's settings",
          "change", True),
    Route("DELETE", "/api/streams/{name}", "remove",
          "Remove a stream: its outputs are finished (cut short after "
          "streamer.control.REMOVE_TIMEOUT_S, said in `cancelled`); answers its summary",
          changes=True),
    Route("GET", "/api/openapi.json", "document", "This API as an OpenAPI 3.1 document"),
    Route("POST", "/api/reload", "reload", "Re-read the run's --config file: streams added, "
          "removed or changed by its difference, the others untouched", changes=True),
)  # fmt: skip


class StreamRoutes:
    """The handlers of `ROUTES`.

    Args:
        control: the run's control (`run.control`), read when a request comes: None answers
            501 (a run that cannot change its streams).
        token_set: the viewer has a token (the guard has checked it by then); without one,
            changes are refused.
        reloader: the run's `--config` reloader, read when a reload is asked (None: 409).
    """

    def __init__(
        self, control: Callable[[], StreamControl | None], token_set: bool,
        reloader: Callable[[], reload_api.Reloads | None] = lambda: None,
    ) -> None:  # fmt: skip
        self._control = control
        self._token_set = token_set
        self._reloader = reloader

    def add_to(self, app: web.Application) -> None:
        """Register every route of `ROUTES`."""
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._handler(route))

    def _handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        work = getattr(self, route.handler)

        async def handle(request: web.Request) -> web.Response:
            if route.handler == "document":
                return json_response(await work(request, None))
            control = self._allowed(route)
            if isinstance(control, web.Response):
                return control
            try:
                return json_response(await work(request, control), route.ok)
            except UnknownStreamError as exc:
                return _error(404, exc)
            except (StreamExistsError, NoConfigFileError) as exc:
                return _error(409, exc)
            except (ConfigError, SourceError) as exc:
                return _error(400, exc)
            except StreamerError as exc:  # an output that cannot be created, ...
                return _error(500, exc)

        return handle

    def _allowed(self, route: Route) -> StreamControl | web.Response:
        """The run's control, or the refusal of a run that cannot take `route`."""
        control = self._control()
        if control is None:
            return _refusal(501, "this server has no run whose streams can change (a viewer "
                            "of an archive alone): start a run with --serve")  # fmt: skip
        if route.changes and not self._token_set:
            return _refusal(403, "changing streams needs the viewer's token, also on this "
                            "machine: start the run with --serve-token TOKEN and send "
                            "'Authorization: Bearer TOKEN'")  # fmt: skip
        return control

    async def document(self, request: web.Request, control: Any) -> dict[str, Any]:
        return openapi()  # served by any run, whether it can change its streams or not

    async def streams(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        return {"streams": control.streams()}

    async def stream(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        name = request.match_info["name"]
        for stream in control.streams():
            if stream["name"] == name:
                return stream
        raise UnknownStreamError(f"no stream named {name!r}; GET /api/streams lists them")

    async def add(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        return await control.add(parse_body(await _body(request), "add"))

    async def change(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        body = parse_body(await _body(request), "change")
        return await control.change(request.match_info["name"], body)

    async def remove(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        return await control.remove(request.match_info["name"])

    async def reload(self, request: web.Request, control: StreamControl) -> dict[str, Any]:
        return await reload_api.reload(self._reloader())


def _refusal(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status)


def _error(status: int, exc: Exception) -> web.Response:
    return _refusal(status, str(exc))


async def _body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ConfigError(
            f"the body must be JSON (Content-Type: application/json), got "
            f"{request.content_type or 'none'}"
        )
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the body is not valid JSON: {exc}") from None


def requests_body(request: web.Request) -> bool:
    """Whether `request` is one of the API's changes: they carry a body (the guard lets them
    through, up to `BODY_LIMIT`) and are refused in JSON."""
    return request.method in ("POST", "PATCH", "DELETE") and (
        request.path in ("/api/streams", "/api/reload") or request.path.startswith("/api/streams/")
    )


# --- the OpenAPI document ------------------------------------------------------------------------


def body_schema(kind: Kind) -> dict[str, Any]:
    """The JSON schema of an `add` or `change` body, from `FIELDS`."""
    fields = [f for f in FIELDS if kind in f.kinds]
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {f.key: f.schema() for f in fields},
        "required": [f.key for f in fields if kind in f.required],
    }


_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "400": "a bad body: the message names the field and what is allowed",
    "401": "the token is missing or wrong",
    "403": "changes need the viewer's token (--serve-token), also on this machine",
    "404": "no stream of that name",
    "409": "a stream of that name runs already",
    "501": "no run whose streams can change is behind this server",
}


def openapi() -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document, made from `ROUTES` and `FIELDS`."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamer: streams of a running run", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "AddStream": body_schema("add"),
                "ChangeStream": body_schema("change"),
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
            },
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {str(route.ok): {"description": "done"}}
    codes = ["401", "501"]
    if route.changes:
        codes += ["400", "403"] if route.body else ["403"]
    if route.body == "add":
        codes.append("409")
    if "{name}" in route.path:
        codes.append("404")
    if route.handler == "document":
        codes = ["401"]
    if route.handler == "reload":
        responses, codes = reload_api.responses(_ERROR), []
    for code in sorted(codes):
        responses[code] = {"description": _ERRORS[code],
                           "content": {"application/json": {"schema": _ERROR}}}  # fmt: skip
    operation: dict[str, Any] = {
        "operationId": route.handler,
        "summary": route.summary,
        "security": [{"token": []}] if route.changes else [{"token": []}, {}],
        "responses": responses,
    }
    if "{name}" in route.path:
        operation["parameters"] = [{"name": "name", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]  # fmt: skip
    if route.body is not None:
        schema = {"$ref": f"#/components/schemas/{route.body.capitalize()}Stream"}
        content = {"application/json": {"schema": schema}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation
