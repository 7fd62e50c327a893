"""Local fakes of the real push providers' wire protocols (FCM HTTP v1, APNs over HTTP/2).

They live with the tests: pushtrio's own mock providers are what a user tries the
service with; these fakes exist to check, field by field, what the real clients send.
"""
