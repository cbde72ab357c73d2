# The end-to-end tests write jwks.json next to this file with their test issuer's keys.
providers = [
    {
        "type": "customJwt",
        "issuer": "https://issuer.syncline.test",
        "jwks": "jwks.json",
        "algorithm": "RS256",
        "applicationID": "syncline-tests",
    }
]
