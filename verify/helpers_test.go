package verify_test

import "crypto/x509/pkix"

func pkixName(org string) pkix.Name {
	return pkix.Name{Country: []string{"JP"}, Organization: []string{org}, CommonName: "Taro Yamada"}
}
