package pki

// SetMaxKDFIterations lowers the PKCS#12 iteration bound for the fuzz
// target (which would otherwise spend seconds per input in the KDF) and
// returns a function restoring it. Not for parallel tests.
func SetMaxKDFIterations(n int64) (restore func()) {
	old := maxKDFIterations
	maxKDFIterations = n
	return func() { maxKDFIterations = old }
}
