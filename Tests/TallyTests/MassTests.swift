import KilnTallyCore
import Tally
import Testing

@Suite("Mass")
struct MassTests {
    @Test("kilograms print with three decimals, rounded half away from zero from the milligram", arguments: [
        (Int64(19_220_000_000), "19220.000"), (41_666_667, "41.667"), (41_666_499, "41.666"), (500, "0.001"),
        (499, "0.000"), (-120_000_000, "-120.000"), (-499, "0.000"), (-500, "-0.001"), (0, "0.000"),
    ])
    func kilograms(mg: Int64, text: String) {
        #expect(Mass(milligrams: mg).kilogramsString == text)
    }

    @Test func tonnesAndUnits() {
        // Worked example 1: 1,500 counts of 0.001 t = 1.500 t.
        #expect(Mass(1.5, .tonne) == Mass(kilograms: 1_500))
        #expect(Mass(kilograms: 1_500).tonnesString == "1.500000")
        #expect(Mass(0.041_666_666, .tonne)?.kilogramsString == "41.667")
        #expect(Mass(12, .kilogram) == Mass(grams: 12_000))
        #expect(Mass(1, .tonnePerHour) == nil && Mass(.nan, .kilogram) == nil)
        #expect(Mass(kilograms: 2) + Mass(grams: 500) - Mass(milligrams: 1) == Mass(milligrams: 2_499_999))
    }
}
