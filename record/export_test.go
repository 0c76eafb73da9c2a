package record

// DecodeStored lets the external tests compare the fast stored-body
// decoder with encoding/json.
var DecodeStored = decodeStored

// CheckIsBody lets the external fuzzers check IsBody on what they build.
var CheckIsBody = checkIsBody
