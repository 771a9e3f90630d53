package events

// EnumValues returns the closed list of values of an enum-typed payload field (a
// RejectReason, ReleaseReason or ExpiredFrom), for the AsyncAPI check.
func EnumValues(v any) ([]string, bool) {
	e, ok := v.(interface{ enumValues() []string })
	if !ok {
		return nil, false
	}
	return e.enumValues(), true
}
