"""Verifies Vestibule's signed identity assertions the way an app behind it would:
PyJWT (an implementation independent of the gateway's), the JWKS fetched over HTTP from
the gateway, and the claims checked. Reads a JSON job on stdin, prints one line per
check, exits 1 on the first failure.

Job: {"jwks_url": "...", "ca_file": "...", "audience": "default",
      "tokens": [{"token": "...", "sub": "...", "amr": [...]}]}
"""
import json
import ssl
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def main():
    job = json.load(sys.stdin)
    tls = ssl.create_default_context(cafile=job["ca_file"])
    jwks = jwt.PyJWKClient(job["jwks_url"], cache_keys=False, ssl_context=tls)
    for case in job["tokens"]:
        token = case["token"]
        key = jwks.get_signing_key_from_jwt(token)
        header = jwt.get_unverified_header(token)
        if header["alg"] not in ("ES256", "EdDSA"):
            fail(f"unexpected alg {header['alg']}")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256", "EdDSA"],
            audience=job["audience"],
            issuer="vestibule",
            options={"require": ["iss", "aud", "sub", "iat", "exp"]},
        )
        if claims["sub"] != case["sub"]:
            fail(f"sub {claims['sub']!r} != {case['sub']!r}")
        if claims["amr"] != case["amr"]:
            fail(f"amr {claims['amr']!r} != {case['amr']!r} for {case['sub']}")
        if not 0 < claims["exp"] - claims["iat"] <= 300:
            fail(f"lifetime {claims['exp'] - claims['iat']} s is not within 5 minutes")
        if abs(claims["iat"] - time.time()) > 120:
            fail("iat is not now")
        for needed in ("name", "email", "groups"):
            if needed not in claims:
                fail(f"claim {needed} missing")
        print(f"ok {claims['sub']} amr={claims['amr']} groups={claims['groups']}")

        # Expired: the same token judged five minutes and a second later.
        try:
            jwt.decode(token, key.key, algorithms=[header["alg"]], audience=job["audience"],
                       leeway=-301, options={"verify_iat": False})
            fail("an expired token was accepted")
        except jwt.ExpiredSignatureError:
            print("ok expired token refused")

        # Re-signed: the same claims and kid, signed by a key that is not the gateway's.
        other = (ec.generate_private_key(ec.SECP256R1()) if header["alg"] == "ES256"
                 else ed25519.Ed25519PrivateKey.generate())
        forged = jwt.encode(dict(claims, sub="admin"), other,
                            algorithm=header["alg"], headers={"kid": header["kid"]})
        try:
            jwt.decode(forged, jwks.get_signing_key_from_jwt(forged).key,
                       algorithms=[header["alg"]], audience=job["audience"])
            fail("a re-signed token was accepted")
        except jwt.InvalidSignatureError:
            print("ok re-signed token refused")

        # Another app's token: wrong audience.
        try:
            jwt.decode(token, key.key, algorithms=[header["alg"]], audience="another-app")
            fail("a token for another audience was accepted")
        except jwt.InvalidAudienceError:
            print("ok foreign audience refused")


if __name__ == "__main__":
    main()
