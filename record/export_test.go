package record

// DecodeStored lets the external tests compare the fast stored-body
// decoder with encoding/json.
var DecodeStored = decodeStored
