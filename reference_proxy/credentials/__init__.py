"""Where the proxy learns who may log in and as whom it logs in to the database.

One interface (:class:`~reference_proxy.credentials.source.CredentialSource`) answers both questions
per user; its implementations are the static users of the configuration file
(:mod:`.static`) and one Secrets Manager secret per user (:mod:`.secrets_manager`), put behind one
interface by :mod:`.combined` when the configuration uses both.  Clients of a user
with IAM authentication prove themselves with a token instead of a password: :mod:`.iam_token`
checks it locally, :mod:`.iam_limit` bounds how many such checks run at once, and :mod:`.iam_auth`
puts both behind the steps an engine's login takes.  :mod:`.refusals` holds RDS Proxy's words for every
credential refusal.

This package imports nothing at its top: the AWS-backed modules need boto3 (the ``aws`` extra), and
the configuration imports :mod:`.methods`, so loading the package must not load the rest.
"""
