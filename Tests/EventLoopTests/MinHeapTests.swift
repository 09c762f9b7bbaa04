import Testing
@testable import EventLoop

@Suite struct MinHeapTests {
    /// Whatever goes in comes out least first, duplicates included, as sorting would give it.
    @Test func removesInOrder() {
        var generator = SystemRandomNumberGenerator()
        for size in [0, 1, 2, 3, 10, 1000] {
            var heap = MinHeap<Int>()
            let values = (0..<size).map { _ in Int.random(in: 0..<50, using: &generator) }
            for value in values { heap.insert(value) }
            #expect(heap.count == size && heap.min == values.min())
            var out: [Int] = []
            while heap.count > 0 { out.append(heap.removeMin()) }
            #expect(out == values.sorted())
        }
    }

    /// Interleaved inserts and removals keep the least on top.
    @Test func interleavedOperations() {
        var heap = MinHeap<Int>()
        var model: [Int] = []
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            if model.isEmpty || Bool.random(using: &generator) {
                let value = Int.random(in: 0..<1000, using: &generator)
                heap.insert(value)
                model.append(value)
            } else {
                let least = heap.removeMin()
                #expect(least == model.min())
                model.remove(at: model.firstIndex(of: least)!)
            }
            #expect(heap.min == model.min())
        }
    }
}
