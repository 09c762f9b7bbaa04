/// `withUnsafeBytes` passes on what its body throws untyped; these pass on the body's own error type,
/// so that typed throws hold end to end (Embedded Swift has no untyped errors).
extension Array where Element == UInt8 {
    /// Calls `body` with the array's bytes.
    @inlinable
    public func withBytes<Result, Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Result) throws(Failure) -> Result {
        try withUnsafeBytes { raw in Swift.Result { () throws(Failure) in try body(raw) } }.get()
    }
}

extension ArraySlice where Element == UInt8 {
    /// Calls `body` with the slice's bytes.
    @inlinable
    public func withBytes<Result, Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Result) throws(Failure) -> Result {
        try withUnsafeBytes { raw in Swift.Result { () throws(Failure) in try body(raw) } }.get()
    }
}
