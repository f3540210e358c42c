"""JSON Schemas of the core.* methods."""
from __future__ import annotations

from typing import Any


PONG: dict[str, Any] = {"title": "result", "type": "string", "const": "pong", "description": "Always \"pong\"."}

_OPTION_PROPS: dict[str, Any] = {
    "legacy_jobs": {"type": "boolean", "description": "Job methods answer with the job id (true, the default) "
                                                        "or with the job's result when it ends (false)."},
    "private_methods": {"type": "boolean", "description": "Accepted for compatibility; there are no private "
                                                            "methods on the wire."},
    "py_exceptions": {"type": "boolean", "description": "Accepted for compatibility; pickled exceptions are "
                                                          "never sent."},
}
OPTIONS: dict[str, Any] = {"title": "options", "type": "object", "properties": _OPTION_PROPS,
                           "additionalProperties": False, "default": {},
                           "description": "Connection options to change."}
OPTIONS_RESULT: dict[str, Any] = {"title": "result", "type": "object", "properties": _OPTION_PROPS,
                                  "description": "The connection's options after the change."}

TARGET: dict[str, Any] = {"title": "target", "type": "string", "enum": ["WS", "CLI", "REST"], "default": "WS",
                          "description": "Who the listing is for (accepted for compatibility; same output)."}
METHODS_RESULT: dict[str, Any] = {"title": "result", "type": "object",
                                  "description": "Method name -> {description, params, result, job, roles, "
                                                 "authentication_required, pipes}."}
JOBS_RESULT: dict[str, Any] = {"title": "result", "description": "Job records, one record (get) or a count."}
ANY_RESULT: dict[str, Any] = {"title": "result", "description": "The awaited job's result."}
EVENT_NAME: dict[str, Any] = {"title": "name", "type": "string", "minLength": 1,
                              "description": "Event name (e.g. vm.query, core.get_jobs) or \"*\" for all."}
SUBSCRIBE_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "Subscription options.",
    "properties": {"since": {
        "type": ["integer", "null"], "minimum": 0, "default": None,
        "description": "The seq of the last event this client saw (every notification carries one beside "
                       "fields): the daemon first sends the kept events of this name numbered after it, then "
                       "the live ones. An error when the daemon no longer keeps them all (it keeps the last "
                       "4096; periodic samples such as vm.stats are not kept) or never sent that number."}},
}
IDENT: dict[str, Any] = {"title": "id", "type": "string", "description": "A subscription id from core.subscribe."}
IDENT_RESULT: dict[str, Any] = {"title": "result", "type": "string", "description": "The subscription id."}

DL_METHOD: dict[str, Any] = {"title": "method", "type": "string",
                             "description": "A job method with an output pipe, e.g. vm.log_file_download."}
DL_ARGS: dict[str, Any] = {"title": "args", "type": "array", "default": [],
                           "description": "Its positional arguments."}
DL_FILENAME: dict[str, Any] = {"title": "filename", "type": "string", "default": "download.bin",
                               "description": "File name offered to the downloader."}
DL_BUFFERED: dict[str, Any] = {"title": "buffered", "type": "boolean", "default": False,
                               "description": "Keep the URL valid for an hour instead of a minute."}
DOWNLOAD_RESULT: dict[str, Any] = {
    "title": "result", "type": "array", "description": "[job id, download URL path with its token].",
    "prefixItems": [{"type": "integer", "description": "Job id."},
                    {"type": "string", "description": "URL path of the download."}]}

BULK_METHOD: dict[str, Any] = {"title": "method", "type": "string", "description": "Method to call."}
BULK_PARAMS: dict[str, Any] = {"title": "params", "type": "array", "items": {"type": "array"},
                               "description": "One positional argument list per call."}
BULK_DESCRIPTION: dict[str, Any] = {
    "title": "description", "type": ["string", "null"], "default": None,
    "description": "Progress text; {method}, {index} and {total} are replaced."}
BULK_RESULT: dict[str, Any] = {
    "title": "result", "type": "array", "description": "One {job_id, result, error} per call.",
    "items": {"type": "object", "properties": {
        "job_id": {"type": ["integer", "null"], "description": "Job id when the method is a job."},
        "result": {"description": "The call's result, or null."},
        "error": {"type": ["string", "null"], "description": "The error's reason, or null."}}}}
