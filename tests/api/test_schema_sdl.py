"""schema.graphql is the schema the code builds, and it has DESIGN.md's normative names."""

from __future__ import annotations

from pathlib import Path

from graphql import build_schema

from memvault.schema import schema

SDL_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_matches_code() -> None:
    assert SDL_FILE.read_text() == schema.as_str() + "\n", (
        "schema.graphql is stale: run `memvault export-schema -o schema.graphql`"
    )


def test_normative_names() -> None:
    built = build_schema(SDL_FILE.read_text())
    query = built.query_type
    mutation = built.mutation_type
    assert query is not None
    assert mutation is not None
    assert set(query.fields) == {
        *("node", "user", "users", "session", "sessions", "memory", "searchMemories")
    }
    assert set(mutation.fields) == {
        "createUser", "upsertUser", "updateUser", "deleteUser", "forgetUser",
        "createSession", "upsertSession", "updateSession", "deleteSession", "restoreSession",
        "addMemories", "updateMemory", "deleteMemory",
    }  # fmt: skip
    for name in ("User", "Session", "Memory"):
        connection = built.get_type(f"{name}Connection")
        assert set(connection.fields) == {"edges", "nodes", "pageInfo", "totalCount"}  # type: ignore[union-attr]
        edge = built.get_type(f"{name}Edge")
        assert set(edge.fields) == {"cursor", "node"}  # type: ignore[union-attr]
        assert [i.name for i in built.get_type(name).interfaces] == ["Node"]  # type: ignore[union-attr]
    assert set(built.get_type("RoleType").values) == {  # type: ignore[union-attr]
        "USER", "ASSISTANT", "SYSTEM", "TOOL", "FUNCTION", "NOROLE",
    }  # fmt: skip
    memory_input = built.get_type("MemoryInput")
    assert list(memory_input.fields) == [  # type: ignore[union-attr]
        "uuid", "role", "roleType", "content", "metadata", "tokenCount", "createdAt",
    ]  # fmt: skip
