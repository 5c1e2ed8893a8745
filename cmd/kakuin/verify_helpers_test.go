package main

import "crypto/x509/pkix"

func pkixOrg(org string) pkix.Name {
	return pkix.Name{Country: []string{"JP"}, Organization: []string{org}, CommonName: "Info Desk"}
}
