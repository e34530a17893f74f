"""moto with IAM enforced: clients acting as a user AWS would refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto.core import enable_iam_authentication

__all__ = ["acting_as_user_without_access"]


@contextmanager
def acting_as_user_without_access(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside a mock: clients created in the block act as an IAM user allowed only s3:ListBucket, with IAM enforced.

    Set up S3 objects and secrets first: once enforced, the fake default credentials are refused too.
    """
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="users-api")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    iam.put_user_policy(UserName="users-api", PolicyName="list-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="users-api")["AccessKey"]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        patch.delenv("AWS_SESSION_TOKEN")
        with enable_iam_authentication():
            yield
