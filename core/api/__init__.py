"""REST routers. Every error is ``{"error": {"code", "message"}}`` with the status of its ErrorCode.

Id path segments use the ``id`` URL convertor (a positive decimal of at most 19 digits), so that a literal
segment such as ``/api/friends/requests`` never matches ``/api/friends/{user_id:id}``: a wrong method there is an
honest 405, a non-id segment an honest 404. Starlette compiles route paths when the routers are defined, so the
convertor is registered here, before any router module is imported.
"""

from starlette.convertors import Convertor, register_url_convertor


class IdConvertor(Convertor[str]):
    regex = "[1-9][0-9]{0,18}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdConvertor())
