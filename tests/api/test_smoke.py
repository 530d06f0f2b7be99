from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.graphql import GraphQLClient


async def test_typename(gql: GraphQLClient) -> None:
    assert await gql.ok("{ __typename }") == {"__typename": "Query"}


async def test_add_and_read(gql: GraphQLClient) -> None:
    data = await gql.ok(
        """mutation { addMemories(input: {sessionId: "s1", memories: [
            {roleType: USER, role: "alice", content: "hi", metadata: {a: 1}},
            {roleType: ASSISTANT, content: "hello"}]}) {
              session { sessionId memoryCount } memories { seq content roleType createdAt } } }"""
    )
    print(data)
    data = await gql.ok(
        """{ session(sessionId: "s1") { memoryCount memories(last: 1) { totalCount
             pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
             nodes { content seq session { sessionId } } } } }"""
    )
    print(data)
    assert data["session"]["memories"]["nodes"][0]["content"] == "hello"
